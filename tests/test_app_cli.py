"""``atomstat dashboard``: atomstat.serve_app (Voila with atomstat's guards) on
app/dashboard.ipynb, with kernel culling, the orphan timeout, allowed hosts and the data folder."""

import shlex

import pytest

from atomstat.cli import main
from atomstat.serve import notebook_path


def test_dashboard_command(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["dashboard", str(data), "--port", "9001", "--cull-idle-timeout", "60",
                 "--dry-run"]) == 0  # fmt: skip
    line = capsys.readouterr().out.strip()
    env, *command = shlex.split(line)
    assert env == f"ATOMSTAT_DATA_DIR={data}" and data.is_dir()
    assert command[1:4] == ["-m", "atomstat.serve_app", str(notebook_path())]
    assert "--port=9001" in command and "--MappingKernelManager.cull_idle_timeout=60" in command
    assert "--MappingKernelManager.cull_connected=True" in command
    assert "--Voila.ip=127.0.0.1" in command  # this machine only, unless --host says otherwise
    assert "--AtomstatVoila.orphan_timeout=30" in command
    assert notebook_path().is_file()


def test_dashboard_passes_hosts_and_orphan_timeout(tmp_path, capsys):
    assert main(["dashboard", str(tmp_path), "--host", "0.0.0.0", "--allow-host", "lab.example.org",
                 "--allow-host", "lab", "--orphan-timeout", "45", "--dry-run"]) == 0  # fmt: skip
    command = shlex.split(capsys.readouterr().out)
    assert "--Voila.ip=0.0.0.0" in command and "--AtomstatVoila.orphan_timeout=45" in command
    assert [c for c in command if "allowed_hosts" in c] == [
        "--AtomstatVoila.allowed_hosts=lab.example.org",
        "--AtomstatVoila.allowed_hosts=lab",
    ]


def test_dashboard_refuses_a_file_as_data_dir(tmp_path, caplog):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert main(["dashboard", str(afile), "--dry-run"]) == 1
    assert f"DATA_DIR {afile} is a file, not a folder" in caplog.text
    assert afile.read_text() == "keep me"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--port", "-1", "must be between 1 and 65535"),
        ("--port", "0", "must be between 1 and 65535"),
        ("--port", "65536", "must be between 1 and 65535"),
        ("--port", "abc", "not an integer"),
        ("--cull-idle-timeout", "-5", "must be at least 0"),
        ("--cull-interval", "0", "must be at least 1"),
        ("--orphan-timeout", "-1", "must be at least 0"),
    ],
)
def test_dashboard_refuses_bad_port_and_timeouts(tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as exc:
        main(["dashboard", str(tmp_path), option, value, "--dry-run"])
    assert exc.value.code == 2
    assert f"argument {option}: {message}" in capsys.readouterr().err


def test_dashboard_accepts_no_culling(tmp_path, capsys):
    assert main(["dashboard", str(tmp_path), "--cull-idle-timeout", "0", "--dry-run"]) == 0
    assert "--MappingKernelManager.cull_idle_timeout=0" in capsys.readouterr().out
