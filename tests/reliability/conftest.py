"""What the reliability probes share: the command line run in this process."""
import subprocess
import sys

import pytest

from deepfield.cli.app import main


@pytest.fixture
def cli(capsys, monkeypatch):
    """The command line's entry point in this process (the same ``main``, without a second start of
    torch): ``cli("predict", run, file, "--out", out)`` gives the exit code, stdout and stderr."""
    def call(*args):
        monkeypatch.setattr(sys, "argv", ["deepfield", *map(str, args)])
        with pytest.raises(SystemExit) as done:
            main()
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, done.value.code or 0, out, err)
    return call
