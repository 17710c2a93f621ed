"""What the convert tests share: a converted model's weights compared with the reference's, and a CLI error line."""

import torch

from nextscale.cli import main


def same_weights(model: torch.nn.Module, reference: torch.nn.Module) -> bool:
    theirs = reference.state_dict()
    return all(torch.equal(value, theirs[key]) for key, value in model.state_dict().items())


def one_line_error(argv: list[str], capsys) -> str:
    """Run the CLI, which must fail with exit status 2 and one readable line on stderr; that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err
