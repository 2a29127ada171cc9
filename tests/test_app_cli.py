"""``atomstat dashboard``: voila on app/dashboard.ipynb with kernel culling and the data folder."""

import shlex

from atomstat.cli import main
from atomstat.serve import notebook_path


def test_dashboard_command(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["dashboard", str(data), "--port", "9001", "--cull-idle-timeout", "60",
                 "--dry-run"]) == 0  # fmt: skip
    line = capsys.readouterr().out.strip()
    env, *command = shlex.split(line)
    assert env == f"ATOMSTAT_DATA_DIR={data}" and data.is_dir()
    assert command[1:4] == ["-m", "voila", str(notebook_path())]
    assert "--port=9001" in command and "--MappingKernelManager.cull_idle_timeout=60" in command
    assert "--MappingKernelManager.cull_connected=True" in command
    assert notebook_path().is_file()
