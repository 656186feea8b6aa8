"""The one check of a refused bad input on the command line."""


def refused(run, *named):
    """Exit 2, one line on stderr naming each of ``named`` (texts or paths), no traceback."""
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    for text in named:
        assert str(text) in run.stderr, run.stderr
