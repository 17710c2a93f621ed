"""What the convert tests share: a converted model's weights compared with the reference's, and a CLI error line."""

import torch

from nextscale.cli import main
from reference_fixtures import STAR_PARITY, VAR_PARITY, require


def same_weights(model: torch.nn.Module, reference: torch.nn.Module) -> bool:
    theirs = reference.state_dict()
    return all(torch.equal(value, theirs[key]) for key, value in model.state_dict().items())


def one_line_error(argv: list[str], capsys) -> str:
    """Run the CLI, which must fail with exit status 2 and one readable line on stderr; that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def official_state_dicts() -> dict:
    """The three parity fixtures' state dicts, plain (STAR's file nests its model in a trainer state)."""
    load = lambda path: torch.load(require(path), map_location="cpu", weights_only=True)  # noqa: E731
    return {
        "var": load(VAR_PARITY / "var_d2.pth"),
        "vae": load(VAR_PARITY / "vqvae.pth"),
        "star": load(STAR_PARITY / "star_d2.pth")["trainer"]["var_wo_ddp"],
    }
