"""The `mtsa` command. Problems the user can fix print one line and exit with code 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from mtsa import config as config_flags
from mtsa.errors import MtsaError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = "" if "--help`)" in message else f" (see `{self.prog} --help`)"
        sys.stderr.write(f"mtsa: error: {message}{hint}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    from mtsa.adversarial.loop import TrainConfig
    from mtsa.demo import DemoConfig
    from mtsa.evaluation.over_refusal import OverRefusalConfig
    from mtsa.redteam import RedteamConfig
    from mtsa.synth.job import SynthConfig
    from mtsa.training.preference import PreferenceConfig
    from mtsa.training.sft import AttackerSFTConfig

    parser = _Parser(prog="mtsa", description="Multi-turn red-teaming and safety alignment (MTSA).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    redteam = commands.add_parser("redteam", help="multi-turn red-team a target model")
    redteam.add_argument("--config", help="YAML file of settings (flags override it)")
    config_flags.add_arguments(redteam, RedteamConfig)

    demo = commands.add_parser("demo",
                               help="synth -> attacker SFT -> red-team -> one Stage 2 iteration -> red-team "
                                    "of the updated target, on the embedded models, offline")
    config_flags.add_arguments(demo, DemoConfig)

    synth = commands.add_parser("synth", help="synthesize Think-before-Attack SFT data for the attacker (Stage 1)")
    synth.add_argument("--config", help="YAML file of settings (flags override it)")
    config_flags.add_arguments(synth, SynthConfig)

    sft = commands.add_parser("sft", help="fine-tune the attacker on synthesized dialogues (Stage 1, TRL)")
    sft.add_argument("--config", help="YAML file of settings (flags override it)")
    config_flags.add_arguments(sft, AttackerSFTConfig)

    train = commands.add_parser("train", help="Stage 2: adversarial iterations, attacker DPO and target "
                                              "future-reward updates")
    train.add_argument("--config", help="YAML file of settings (flags override it)")
    config_flags.add_arguments(train, TrainConfig)

    preference = commands.add_parser("preference", help="one preference update of a model on pairs: DPO or the "
                                                        "future-reward loss (what each `mtsa train` update runs)")
    preference.add_argument("--config", help="YAML file of settings (flags override it)")
    config_flags.add_arguments(preference, PreferenceConfig)

    over_refusal = commands.add_parser("over-refusal", help="how often a model refuses benign prompts (one turn "
                                                            "each, read by the refusal judge)")
    over_refusal.add_argument("--config", help="YAML file of settings (flags override it)")
    config_flags.add_arguments(over_refusal, OverRefusalConfig)

    export = commands.add_parser("export", help="merge a trained adapter into its base model: standalone "
                                                "Hugging Face weights and a model card")
    export.add_argument("adapter", help="adapter folder, e.g. RUN/iter_3/target")
    export.add_argument("--out", required=True, help="folder to write the merged model to")
    export.add_argument("--evaluation", nargs="*", default=[], help="`mtsa redteam` and `mtsa over-refusal` run "
                                                                   "folders of this checkpoint: their ASR and "
                                                                   "over-refusal go into the model card")

    judge = commands.add_parser("judge", help="score (goal/prompt, response/completion) rows from CSV or JSONL")
    judge.add_argument("--judge", help="judge name (default: embedded)")
    judge.add_argument("--helpfulness", help="score helpfulness instead, with this scorer: embedded, "
                                             "rm:PATH_OR_ID or llm:SPEC (writes a 'helpfulness' column)")
    judge.add_argument("--input", required=True, help="CSV or JSONL file of rows")
    judge.add_argument("--out", required=True, help="JSONL file to write: the rows plus the judge's columns")
    judge.add_argument("--batch-size", type=int, default=256, help="rows scored per batch")

    fit = commands.add_parser("fit-requests", help="fit the embedded judge's request classifier on your own "
                                                   "labelled requests (your policy of what is harmful)")
    fit.add_argument("--data", nargs="*", default=[], help="files with a request (or goal/prompt) column and a "
                                                           "label column: harmful or benign (.jsonl, .json, .csv)")
    fit.add_argument("--harmful", nargs="*", default=[], help="files whose every row is a harmful request")
    fit.add_argument("--benign", nargs="*", default=[], help="files whose every row is a benign request")
    fit.add_argument("--l2", type=float, help="L2 regularisation strength (default: 1e-4, as the shipped one)")
    fit.add_argument("--chat-layer", type=int, default=0, help="also read the embedded chat model's state after "
                                                                "this layer at the end of the request (default 0: the "
                                                                "sentence embedding alone, as the shipped classifier; "
                                                                "docs/judges-experiments.md compares layers)")
    fit.add_argument("--encoder", choices=("minilm", "mpnet"), default="minilm",
                     help="sentence encoder: minilm (all-MiniLM-L6-v2, the judge's own) or mpnet "
                          "(all-mpnet-base-v2, larger; see docs/judges.md)")
    fit.add_argument("--fine-tune", action="store_true",
                     help="fine-tune MiniLM (LoRA) instead of fitting a linear head on its embedding: reads "
                          "intent better, a few minutes on a CPU; --out is then a folder (see docs/judges.md)")
    fit.add_argument("--fits", type=int, default=1, help="with --fine-tune: fit this many (seeds 0, 1...) and "
                                                         "average their probabilities, steadier on requests unlike "
                                                         "the data (default 1)")
    fit.add_argument("--out", required=True, help="classifier JSON (a folder with --fine-tune) to write; use it "
                                                  "with --judge 'embedded?requests=PATH'")
    return parser


INTERRUPTED = {  # what an interrupted command keeps, and how to go on
    "redteam": "finished dialogues are saved, rerun with --resume to finish",
    "synth": "finished dialogues are saved, rerun with --resume to finish",
    "train": "finished dialogues and phases are saved, rerun with --resume to finish",
    "demo": "finished stages are saved, rerun with --resume to finish",
    "sft": "nothing is saved until training ends: rerun into an empty --out",
    "preference": "nothing is saved until training ends: rerun into an empty --out",
    "export": "the --out folder may be incomplete: remove it and rerun",
}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="mtsa: %(levelname)s: %(message)s")
    logging.getLogger("mtsa").setLevel(logging.INFO)  # our own notes (dtype chosen, retries); libraries stay quiet
    _quiet_libraries()
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the command's own help lists its flags; `mtsa --help` does not
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (see `mtsa {args.command} --help`)")
    try:
        return _run(args)
    except MtsaError as exc:
        sys.stderr.write(f"mtsa: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"mtsa: interrupted; {INTERRUPTED.get(args.command, 'nothing was written')}\n")
        return 130


def _quiet_libraries() -> None:
    """Keep the terminal to our own progress and results: libraries' per-step progress bars
    (dataset preprocessing, downloads) and deprecation notices about their own internals say
    nothing a user can act on. Set at the command line only; library users keep the defaults,
    and an environment variable the user set wins."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # peft and trl read this deprecated transformers property; nothing for the user to change
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def _run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as transformers_logging

    from mtsa.redteam import RedteamConfig, run_redteam

    transformers_logging.disable_progress_bar()  # our own bar is the one that matters

    if args.command == "redteam":
        run_redteam(config_flags.build(RedteamConfig, args, args.config))
    elif args.command == "demo":
        from mtsa.demo import DemoConfig, run_demo

        run_demo(config_flags.build(DemoConfig, args))
    elif args.command == "synth":
        from mtsa.synth.job import SynthConfig, run_synth

        run_synth(config_flags.build(SynthConfig, args, args.config))
    elif args.command == "sft":
        from mtsa.training.sft import AttackerSFTConfig, run_sft

        run_sft(config_flags.build(AttackerSFTConfig, args, args.config))
    elif args.command == "train":
        from mtsa.adversarial.loop import TrainConfig, run_train

        run_train(config_flags.build(TrainConfig, args, args.config))
    elif args.command == "preference":
        from mtsa.training.preference import PreferenceConfig, run_preference

        run_preference(config_flags.build(PreferenceConfig, args, args.config))
    elif args.command == "over-refusal":
        from mtsa.evaluation.over_refusal import OverRefusalConfig, run_over_refusal

        run_over_refusal(config_flags.build(OverRefusalConfig, args, args.config))
    elif args.command == "export":
        from mtsa.training.export import export

        export(args.adapter, args.out, args.evaluation)
    elif args.command == "judge":
        from mtsa.judges.score_file import score_file

        if args.batch_size < 1:
            raise MtsaError("--batch-size must be >= 1")
        if args.helpfulness and args.judge:
            raise MtsaError("give --judge (safety) or --helpfulness (a helpfulness scorer), not both")
        if args.helpfulness:
            count = score_file(args.helpfulness, args.input, args.out, args.batch_size, helpfulness=True)
        else:
            count = score_file(args.judge or "embedded", args.input, args.out, args.batch_size)
        print(f"scored {count} rows -> {args.out}")
    elif args.command == "fit-requests":
        _fit_requests(args)
    return 0


def _fit_requests(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mtsa.judges.minilm_lora import RECORD_FILE
    from mtsa.judges.requests import DEFAULT_L2, fit_and_save

    sources = ([(Path(p), None) for p in args.data] + [(Path(p), "harmful") for p in args.harmful]
               + [(Path(p), "benign") for p in args.benign])
    if not sources:
        raise MtsaError("give labelled requests: --data FILE (with a label column), --harmful FILE, --benign FILE")
    if args.fine_tune and (args.l2 is not None or args.chat_layer or args.encoder != "minilm"):
        raise MtsaError("--fine-tune fine-tunes MiniLM itself: --l2, --chat-layer and --encoder are for linear heads")
    if args.fits < 1 or (args.fits > 1 and not args.fine_tune):
        raise MtsaError("--fits is how many fine-tuned classifiers to average: >= 1, and only with --fine-tune")
    l2 = DEFAULT_L2 if args.l2 is None else args.l2
    if not l2 > 0:  # also NaN
        raise MtsaError("--l2 must be > 0")
    if not 0 <= args.chat_layer <= 30:
        raise MtsaError("--chat-layer must be between 0 and 30 (the embedded chat model's layers)")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise MtsaError(f"output folder '{out.parent}' does not exist")
    if args.fine_tune and out.exists() and not (out / RECORD_FILE).is_file():  # checked before minutes of fitting
        raise MtsaError(f"--out {out} exists and is not a classifier `fit-requests --fine-tune` wrote, which "
                        "is all it replaces: give a new path")
    if not args.fine_tune and out.is_dir():
        raise MtsaError(f"--out {out} is a folder: give the classifier JSON file's path")
    summary = fit_and_save(sources, out, l2, args.chat_layer, args.encoder, args.fine_tune, args.fits)
    print(f"fitted on {summary['harmful']} harmful and {summary['benign']} benign requests "
          f"(training accuracy {summary['train_accuracy']:.3f}) -> {out}")


if __name__ == "__main__":
    sys.exit(main())
