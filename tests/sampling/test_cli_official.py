"""`nextscale convert` + `nextscale sample` on the official fixtures reproduce the official tokens."""

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from nextscale.cli import main


@pytest.fixture(scope="module")
def converted(parity_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "var-d2"
    assert (
        main(
            [
                "convert",
                "--vae",
                str(parity_dir / "vqvae.pth"),
                "--var",
                str(parity_dir / "var_d2.pth"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_cli_sample_reproduces_the_official_tokens(converted, parity, tmp_path):
    grid, tokens, folder = tmp_path / "grid.png", tmp_path / "tokens.safetensors", tmp_path / "each"
    code = main(
        [
            "sample",
            "--model",
            str(converted),
            "--class",
            "207",
            "980",
            "--seed",
            "42",
            "--cfg",
            "1.5",
            "--top-k",
            "900",
            "--top-p",
            "0.95",
            "--out",
            str(grid),
            "--save-tokens",
            str(tokens),
            "--out-dir",
            str(folder),
        ]
    )
    assert code == 0
    assert torch.equal(load_file(tokens)["tokens"], parity["sample_idx_all"])
    assert Image.open(grid).size[1] > 256
    assert sorted(p.name for p in folder.glob("*.png")) == ["0000_class207.png", "0001_class980.png"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--class", "1000000"], "out of range"),
        (["--cfg", "-1"], "cfg"),
        (["--top-k", "0"], "--top-k"),
        (["--top-p", "1.5"], "--top-p"),
        (["--temperature", "0"], "temperature"),
    ],
)
def test_cli_bad_sampling_flags_exit_with_one_line(converted, tmp_path, capsys, flags, message):
    code = main(["sample", "--model", str(converted), "--out", str(tmp_path / "x.png"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_convert_refuses_swapped_files(parity_dir, tmp_path, capsys):
    code = main(
        [
            "convert",
            "--vae",
            str(parity_dir / "var_d2.pth"),
            "--var",
            str(parity_dir / "vqvae.pth"),
            "--out",
            str(tmp_path / "bad"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "vqvae.pth is not an official VAR transformer checkpoint" in err and "(use --vae for it)" in err


def test_converted_folder_recommends_the_official_fid_settings(converted):
    from nextscale.sampling.pipeline import Pipeline

    assert Pipeline.from_pretrained(converted).recommended_sampling == {"cfg": 1.5, "top_k": 900, "top_p": 0.96}


def test_missing_model_folder_is_one_line(tmp_path, capsys):
    assert main(["sample", "--model", str(tmp_path / "nope")]) == 2
    assert "not a pipeline folder" in capsys.readouterr().err


def test_cli_edit_on_converted_official_weights_keeps_the_image_tokens(converted, parity, tmp_path):
    """Inpainting with the converted official model: outside the box the tokens are the image's own."""
    from nextscale.data.grids import to_pil
    from nextscale.sampling.editing import box_mask, scale_keep_masks
    from nextscale.sampling.pipeline import Pipeline

    image_path = tmp_path / "in.png"
    to_pil(parity["images"][:1])[0].save(image_path)
    assert (
        main(
            [
                "edit",
                "--model",
                str(converted),
                "--image",
                str(image_path),
                "--box",
                "0.25",
                "0.25",
                "0.75",
                "0.75",
                "--seed",
                "0",
                "--top-k",
                "900",
                "--top-p",
                "0.95",
                "--out",
                str(tmp_path / "out.png"),
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "out.png").size == (256, 256)
    pipe = Pipeline.from_pretrained(converted)
    out = pipe.inpaint(str(image_path), box=(0.25, 0.25, 0.75, 0.75), seed=0, output_type="pt")
    keep = torch.cat(scale_keep_masks(~box_mask(16, (0.25, 0.25, 0.75, 0.75)), pipe.transformer.config.scale_sides), 1)
    image_tokens = pipe.tokenizer.tokens_from_indices(pipe.tokenizer.encode(out.prepared.tensor))
    assert torch.equal(out.tokens[keep], image_tokens[keep])
