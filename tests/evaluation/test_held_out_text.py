"""Held-out loss of text models: captioned batches, the text condition, and the refusals (a stand-in encoder)."""

import pytest
import torch

from nextscale.evaluation.held_out import collate_held_out, evaluate_held_out, held_out_metrics
from nextscale.presets import tiny
from nextscale.text.encoding import TextEncoding
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.conditioning import TextCondition
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.text_model import TextScaleTransformer
from tiny_models import tiny_text_config

WIDTH = 8


class StandInEncoder:
    """A frozen 'text encoder' without weights to download: one token per word, features from the word's hash."""

    width = WIDTH

    def encode(self, prompts: list[str]) -> TextEncoding:
        words = [prompt.split() or [""] for prompt in prompts]
        length = max(len(row) for row in words)
        hidden = torch.zeros(len(prompts), length, WIDTH)
        mask = torch.zeros(len(prompts), length, dtype=torch.int64)
        for row, row_words in enumerate(words):
            for column, word in enumerate(row_words):
                generator = torch.Generator().manual_seed(sum(map(ord, word)))
                hidden[row, column] = torch.randn(WIDTH, generator=generator)
                mask[row, column] = 1
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return TextEncoding(hidden, mask, pooled)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    tokenizer_config, class_config = tiny()
    config = tiny_text_config(WIDTH)
    transformer = TextScaleTransformer(config)
    transformer.init_weights(init_head=1.0)  # logits that depend on the input
    return MultiScaleVQVAE(tokenizer_config).eval(), transformer.eval(), ScaleTransformer(class_config).eval()


def test_collate_takes_captions_labels_and_the_first_of_several_captions():
    tokens = torch.arange(6).view(2, 3)
    assert collate_held_out([(tokens[0], "a cat"), (tokens[1], "a dog")])[1] == ["a cat", "a dog"]
    stacked, captions = collate_held_out([(tokens[0], ["a cat", "a kitten"]), (tokens[1], ("a dog",))])
    assert torch.equal(stacked, tokens) and captions == ["a cat", "a dog"]
    labels = collate_held_out([(tokens[0], 3), (tokens[1], 1)])[1]
    assert labels.dtype == torch.int64 and labels.tolist() == [3, 1]


def test_text_loss_is_the_teacher_forced_loss_of_the_captions(models):
    tokenizer, transformer, _ = models
    tokens = torch.randint(0, tokenizer.config.vocab_size, (4, tokenizer.config.schedule.total_tokens))
    captions = ["a red circle", "a blue square", "a red circle", "two stars"]
    report = evaluate_held_out(transformer, tokenizer, [(tokens, captions)], False, StandInEncoder())

    encoding = StandInEncoder().encode(captions)
    condition = TextCondition(encoding.hidden, encoding.mask, encoding.pooled)
    teacher = tokenizer.teacher_forcing_input(tokenizer.indices_from_tokens(tokens))
    with torch.no_grad():
        expected = held_out_metrics(transformer(condition, teacher), tokens, transformer.config.schedule)
    assert report.num_samples == 4
    assert report.L_avg == pytest.approx(expected["loss"].mean().item(), rel=1e-5)
    assert report.scale_loss == pytest.approx(expected["scale_loss"].mean(0).tolist(), rel=1e-5)
    other = evaluate_held_out(transformer, tokenizer, [(tokens, ["a bag"] * 4)], False, StandInEncoder())
    assert other.L_avg != pytest.approx(report.L_avg, rel=1e-6)  # the captions condition the model


def test_mismatched_data_and_a_missing_encoder_are_refused(models):
    tokenizer, transformer, class_transformer = models
    tokens = torch.zeros(2, tokenizer.config.schedule.total_tokens, dtype=torch.int64)
    with pytest.raises(ValueError, match="needs its text encoder"):
        evaluate_held_out(transformer, tokenizer, [(tokens, ["a", "b"])], False)
    with pytest.raises(ValueError, match="labelled, the model is text-conditional"):
        evaluate_held_out(transformer, tokenizer, [(tokens, torch.tensor([0, 1]))], False, StandInEncoder())
    with pytest.raises(ValueError, match="captioned, the model is class-conditional"):
        evaluate_held_out(class_transformer, tokenizer, [(tokens, ["a", "b"])], False)
