"""Result files are replaced whole, with the permissions any other file of the user gets."""

import os

from mtsa.atomic import write_json_atomic


def test_a_written_file_has_the_users_usual_permissions_and_no_temporary_file_is_left(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    write_json_atomic(tmp_path / "config.json", {"a": 1})
    write_json_atomic(tmp_path / "config.json", {"a": 2})  # replaced in place
    assert os.stat(tmp_path / "config.json").st_mode == os.stat(plain).st_mode  # mkstemp's would be 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "plain.txt"]
    assert (tmp_path / "config.json").read_text() == '{\n  "a": 2\n}\n'
