"""``Pipeline``: a tokenizer and a transformer that fit together, called to sample.

The call takes either class labels or prompts; the pipeline turns them into a condition object
(``ClassCondition`` / ``TextCondition``) that the one sampler loop understands. The rest of the class lives
next to this file, one mixin a job: the folder (``pipeline_folder.py``: ``from_pretrained``,
``save_pretrained``; its ``pipeline.json`` names the pipeline class, so ``Pipeline.from_pretrained`` returns
the right kind), class names (``pipeline_class_names.py``), the speed switches (``pipeline_speed.py``:
``use_precision``, ``use_cuda_graphs``, ...) and editing (``pipeline_editing.py``: ``edit``, ``inpaint``,
``outpaint``).

References: diffusers ``DiffusionPipeline`` and ``pipelines/dit/pipeline_dit.py``.
"""

from __future__ import annotations

import copy
import itertools
import numbers
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image

from nextscale.pretrained import usable_device
from nextscale.sampling.cpu_memory import MemoryHold
from nextscale.sampling.editing import ImageEdit
from nextscale.sampling.guidance import SamplingConfig, ScaleOverride
from nextscale.sampling.outputs import OUTPUT_TYPES, PipelineOutput, to_output_type
from nextscale.sampling.pipeline_class_names import CALL_UNCONDITIONAL, ClassNamesMixin
from nextscale.sampling.pipeline_editing import EditingMixin
from nextscale.sampling.pipeline_folder import PipelineFolderMixin
from nextscale.sampling.pipeline_speed import SpeedSwitchesMixin
from nextscale.sampling.sampler import ScaleSampler, TokenConstraint, check_components_fit
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.conditioning import Condition
from nextscale.transformer.model import ScaleTransformer

SEED_RANGE = (-(2**63), 2**64)
# What a copy or an unpickled pipeline makes anew: its own lock and turn, and no CPU memory held by this one.
UNSHARED = ("call_lock", "turn_holder", "memory_hold")
# Keyword arguments of a text pipeline call (a class pipeline refuses them).
TEXT_INPUTS = (
    "prompt",
    "negative_prompt",
    "prompt_embeds",
    "prompt_attention_mask",
    "pooled_prompt_embeds",
    "negative_prompt_embeds",
    "negative_prompt_attention_mask",
    "negative_pooled_prompt_embeds",
)


class Pipeline(PipelineFolderMixin, ClassNamesMixin, SpeedSwitchesMixin, EditingMixin):
    """Class-conditional next-scale generation (VAR): ``pipe(class_labels=[207, 980], seed=0).images``.

    ``Pipeline.from_pretrained(folder)`` returns the folder's kind (this class, ``TextPipeline`` or
    ``RasterPipeline``); ``save_pretrained(folder)`` writes one. Editing: :meth:`inpaint`, :meth:`outpaint`,
    :meth:`edit`; re-rendering tokens: :meth:`decode_tokens`; speed: :meth:`use_precision`, :meth:`release_memory`.
    Unconditional rows: ``None`` among the labels (``pipe(class_labels=[3, None])``). A folder's recommended settings
    (the CLI's defaults) are passed, not applied: ``pipe(class_labels=[3], **pipe.recommended_sampling)``.

    Args:
        tokenizer: the multi-scale VQ-VAE.
        transformer: a :class:`ScaleTransformer` trained on the tokenizer's tokens (checked: scales, vocabulary
            and code width must agree).
        class_names: optional name of each class id (``class_names[i]`` names class ``i``); labels may then be
            given by name.
    """

    def __init__(
        self, tokenizer: MultiScaleVQVAE, transformer: ScaleTransformer, class_names: Sequence[str] | None = None
    ) -> None:
        if isinstance(transformer, MultiScaleVQVAE) and not isinstance(tokenizer, MultiScaleVQVAE):
            raise TypeError(f"{type(self).__name__} takes (tokenizer, transformer): the two are swapped")
        if not isinstance(tokenizer, MultiScaleVQVAE):
            raise TypeError(f"tokenizer must be a MultiScaleVQVAE, got {type(tokenizer).__name__}")
        self.check_transformer(transformer)
        self.tokenizer = tokenizer.eval()
        self.transformer = transformer.eval()
        self.sampler = self.make_sampler(self.tokenizer, self.transformer)
        self.recommended_sampling: dict = {}
        # Which run checkpoint, step and weights this pipeline holds, when `load_run_pipeline` loaded it (for reports).
        self.trained_weights = None
        self.class_names = self.check_class_names(class_names)
        self.start_unshared_state()  # the lock that calls and switches from several threads take turns at (`turn`)

    def __deepcopy__(self, memo: dict) -> Pipeline:
        """``copy.deepcopy(pipe)``: an independent pipeline, as if just loaded: its own components and locks, and
        nothing kept from this one's calls (KV cache, CUDA graphs, held CPU memory)."""
        twin = type(self).__new__(type(self))
        memo[id(self)] = twin
        steps = self.sampler.steps  # replaced by new steps of the same kind, which keep nothing yet
        memo[id(steps)] = type(steps)(copy.deepcopy(steps.transformer, memo))
        twin.__dict__.update(copy.deepcopy({k: v for k, v in vars(self).items() if k not in UNSHARED}, memo))
        twin.start_unshared_state()
        return twin

    def __getstate__(self) -> dict:
        """``pickle.dumps(pipe)`` (a multiprocessing worker, joblib): the components and settings, as for
        :meth:`__deepcopy__`; the locks, the held CPU memory and what calls kept (KV cache, CUDA graphs) stay here."""
        state = {key: value for key, value in vars(self).items() if key not in UNSHARED}
        sampler = copy.copy(self.sampler)  # the same components, with new steps that keep nothing yet
        sampler.steps = type(self.sampler.steps)(self.sampler.steps.transformer)
        state["sampler"] = sampler
        return state

    def __setstate__(self, state: dict) -> None:
        """The other half of :meth:`__getstate__`: a pipeline as if just loaded, with its own lock."""
        self.__dict__.update(state)
        self.start_unshared_state()

    def start_unshared_state(self) -> None:
        """The parts a copy or an unpickled pipeline makes anew rather than sharing (see ``UNSHARED``)."""
        self.memory_hold = MemoryHold(owner=self)
        self.call_lock = threading.Lock()
        self.turn_holder: int | None = None  # the thread whose call or switch holds the lock (see `turn`)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the pipeline for one call or one switch (``to``, ``use_precision``, ``release_memory``, ...): a server
        calls one pipeline from several threads, and the calls share the kept KV cache and CUDA graphs, which a call
        or a switch in another thread would replace under a running call. Other threads wait for their turn.

        A plain lock, not an RLock: the one thread that could re-enter is a call's own (a ``constraint`` hook that
        calls ``pipe.to`` or ``pipe(...)``), and letting it in would swap the weights under that call; with a plain
        lock it would wait for itself forever. It is refused in one line instead.
        """
        if self.turn_holder == threading.get_ident():
            raise RuntimeError(
                f"{type(self).__name__} is already sampling in this thread: calling it, moving it or switching its "
                "precision, kernels or CUDA graphs from inside a call (a constraint hook) is not supported; do it "
                "before or after the call"
            )
        with self.call_lock:
            self.turn_holder = threading.get_ident()
            try:
                yield
            finally:
                self.turn_holder = None

    @staticmethod
    def make_sampler(tokenizer: MultiScaleVQVAE, transformer: torch.nn.Module) -> ScaleSampler:
        """The sampling loop of this kind of pipeline (checks that the components fit)."""
        check_components_fit(tokenizer, transformer)
        return ScaleSampler(tokenizer, transformer)

    @staticmethod
    def check_transformer(transformer: torch.nn.Module) -> None:
        if not isinstance(transformer, ScaleTransformer):
            raise TypeError(
                f"Pipeline needs a class-conditional ScaleTransformer, got {type(transformer).__name__}; "
                "text models go in a TextPipeline, the raster-scan baseline (RasterTransformer) in a RasterPipeline"
            )

    def __repr__(self) -> str:
        """One line that says what this pipeline samples, where, and how fast it was asked to go."""
        sides = tuple(self.tokenizer.config.scale_sides)
        params = sum(p.numel() for p in self.transformer.parameters()) / 1e6
        size = "" if self.precision.name == "int8" else f"({params:.1f}M params)"  # int8 packs its linear weights
        parts = [
            f"device={str(self.device)!r}",
            f"precision={self.precision.name!r}",
            f"image_size={self.image_size}",
            f"channels={self.tokenizer.config.in_channels}",
            f"scale_sides={sides}",
            f"tokens={sum(side * side for side in sides)}",
            f"transformer={type(self.transformer).__name__}{size}",
            *self.describe_conditioning(),
        ]
        if self.recommended_sampling:
            parts.append(f"recommended_sampling={self.recommended_sampling}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def describe_conditioning(self) -> list[str]:
        """The ``__repr__`` entries about what the pipeline is conditioned on (classes here)."""
        if self.class_names:
            return [f"classes={list(self.class_names)}"]
        return [f"num_classes={self.num_classes}"]

    def to(self, device: str | torch.device) -> Pipeline:
        """Move the pipeline to ``device`` ("cpu", "cuda", "cuda:1", a ``torch.device``); returns ``self``.

        Only devices: the sampling precision is chosen with ``Pipeline.from_pretrained(path, dtype=...)`` or
        :meth:`use_precision` (a dtype here would leave the components disagreeing about their dtypes). Moving
        waits for a call running in another thread (see :meth:`turn`) and drops what the pipeline keeps between calls
        (see :meth:`release_memory`).
        """
        if isinstance(device, torch.dtype):
            raise TypeError(
                f"Pipeline.to takes a device, not the dtype {device}; pick the sampling precision with "
                "Pipeline.from_pretrained(path, dtype='bf16' | 'fp16' | 'int8') or pipe.use_precision(...)"
            )
        device = usable_device(device)
        with self.turn():  # not under a call running in another thread
            self.drop_kept_state()
            self.move_components(device)
        return self

    def move_components(self, device: torch.device) -> None:
        """Move the components to ``device`` (called by :meth:`to` in the pipeline's turn; a pipeline with more
        components moves them here too)."""
        self.tokenizer.to(device)
        self.transformer.to(device)

    def check_component_moves(self) -> None:
        """Refuse components moved by hand to another dtype or device (``pipe.transformer.to(torch.bfloat16)``),
        which would otherwise fail deep inside a layer: the pipeline chooses the precision (the transformer's linear
        weights may hold its autocast dtype, everything else stays float32), and :meth:`to` moves both components."""
        transformer_dtypes = {torch.float32, self.precision.autocast_dtype or torch.float32}
        for name, component, dtypes in (
            ("tokenizer", self.tokenizer, {torch.float32}),
            ("transformer", self.transformer, transformer_dtypes),
        ):
            for tensor in itertools.chain(component.parameters(), component.buffers()):
                if tensor.is_floating_point() and tensor.dtype not in dtypes:
                    raise TypeError(
                        f"pipe.{name} holds {tensor.dtype} weights, but this pipeline samples in "
                        f"{self.precision.name}; do not move a component's dtype: load with "
                        "Pipeline.from_pretrained(path, dtype='bf16' | 'fp16' | 'int8') or call pipe.use_precision(...)"
                    )
                if tensor.device != self.device:
                    raise ValueError(
                        f"pipe.{name} is on {tensor.device} but the pipeline samples on {self.device}; move the whole "
                        "pipeline with pipe.to(device)"
                    )

    @property
    def device(self) -> torch.device:
        """Where the components live (and where ``seed`` makes its generator)."""
        return self.sampler.device

    @property
    def num_classes(self) -> int:
        """The number of classes (labels 0..num_classes-1). ``num_classes`` itself is the internal null class: ask
        for unconditional rows with ``None`` (``pipe(class_labels=[3, None])``)."""
        return self.transformer.config.num_classes

    @property
    def is_text_conditional(self) -> bool:
        """Whether the pipeline takes prompts (``TextPipeline``) rather than class labels."""
        return False

    @property
    def image_size(self) -> int:
        """The side in pixels of the (square) images the pipeline makes."""
        return self.tokenizer.config.image_size

    # ---------------------------------------------------------------------------------------- sampling
    def make_generator(self, seed: int | None, generator: torch.Generator | None) -> torch.Generator | None:
        """The generator of a call: a new one seeded with ``seed`` on the pipeline's device, the caller's own
        ``generator`` (checked: a ``torch.Generator`` on the pipeline's device), or None (torch's global one)."""
        if seed is not None and generator is not None:
            raise ValueError("give either seed or generator, not both")
        if seed is None:
            if generator is None:
                return None
            if not isinstance(generator, torch.Generator):
                raise TypeError(
                    f"generator must be a torch.Generator, got {type(generator).__name__}; "
                    "pass seed=<int> to have the pipeline make one"
                )
            if generator.device.type != self.device.type:
                raise ValueError(
                    f"the generator is on {generator.device.type} but the pipeline samples on {self.device}; make it "
                    "with torch.Generator(device=pipe.device).manual_seed(...), or pass seed=<int>"
                )
            return generator
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if not SEED_RANGE[0] <= seed < SEED_RANGE[1]:  # what torch.Generator.manual_seed can take
            raise ValueError(f"seed must be an integer in [-2**63, 2**64), got {seed}")
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def __call__(
        self,
        class_labels: Sequence[int | str | None] | torch.Tensor | int | str | None = None,
        prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        cfg: float = 1.5,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        smooth: bool = False,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        cfg_schedule: str = "linear",
        overrides: ScaleOverride | Sequence[ScaleOverride] = (),
        constraint: TokenConstraint | ImageEdit | None = None,
        masked_sampling: bool = False,
        masked_plan: str = "1024",
        **text_inputs,
    ) -> PipelineOutput:
        """Sample images.

        Args:
            class_labels: labels (each repeated ``num_images_per_prompt`` times): ids in [0, num_classes) or class
                names, and ``None`` for an unconditional row (``[3, None]``; ``out.class_labels`` holds the null id
                ``num_classes`` there); or None to draw ``num_images_per_prompt`` labels from the generator (the
                official sampler's first draw). Any other id, ``num_classes`` included, is refused.
            prompt: a string or a list of strings, for text pipelines (a class pipeline refuses them); the empty
                prompt ``""`` is an unconditional row.
            num_images_per_prompt: images per label or prompt.
            cfg, top_k, top_p, temperature, smooth, cfg_schedule, overrides: see ``SamplingConfig``. A folder's
                recommended settings (``pipe.recommended_sampling``, which the CLI uses) are not applied here: pass
                them, ``pipe(..., **pipe.recommended_sampling)``.
            seed / generator: source of randomness. A seed makes a new generator on the pipeline's device (the
                same seed gives the same images at every call with the same labels or prompts, images per prompt,
                settings and precision; all rows draw from one generator, so an image depends on the whole batch:
                ``[3]`` and ``[3, 5]`` with seed 0 do not start with the same image); a generator (on the pipeline's
                device) is advanced by the call; either leaves torch's global generator alone. With neither, the
                draws come from (and advance) torch's global generator.
            output_type: "pil" (a list of B images, mode "L" or "RGB"), "pt" ((B, C, H, W) float32 in [0, 1], on
                the pipeline's device) or "np" ((B, H, W, C) uint8); C is 1 for grayscale models, else 3.
            constraint: per-scale token hook, or an ``ImageEdit`` (editing), which the call encodes in its turn.
            masked_sampling, masked_plan: STAR's masked sampling of the finest scales (models with the
                masked-sampler head; see ``SamplingConfig``). With a seed its order noise comes from a CPU generator
                seeded alike, as the official code takes it from torch's (seeded) global generator.
            **text_inputs: ``negative_prompt`` (a string, or one per prompt: guidance's unconditional input in
                place of the empty prompt; no effect at cfg 0), ``prompt_embeds``, ``prompt_attention_mask``,
                ``pooled_prompt_embeds`` and the three ``negative_*`` (text pipelines; see ``TextPipeline``).
        Returns:
            PipelineOutput with ``images``, ``tokens`` (B, L) and ``class_labels`` or ``prompts``.
        """
        unknown = sorted(set(text_inputs) - set(TEXT_INPUTS))
        if unknown:
            raise TypeError(f"unexpected argument(s) {unknown}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if not isinstance(num_images_per_prompt, numbers.Integral) or isinstance(num_images_per_prompt, bool):
            raise TypeError(f"num_images_per_prompt must be an int, got {num_images_per_prompt!r}")
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be >= 1, got {num_images_per_prompt}")
        for name, value in (("smooth", smooth), ("masked_sampling", masked_sampling)):
            if not isinstance(value, (bool, np.bool_)):  # smooth="no" would switch smoothing on
                raise TypeError(f"{name} must be True or False, got {value!r}")
        if isinstance(prompt, Iterator):  # encoding would use a generator up, leaving no prompts for the output
            prompt = list(prompt)
        overrides = self.check_overrides(overrides)
        config = SamplingConfig(
            cfg=cfg,
            cfg_schedule=cfg_schedule,
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            smooth=bool(smooth),
            overrides=overrides,
            masked_sampling=bool(masked_sampling),
            masked_plan=masked_plan,
        )
        guided = config.uses_guidance(self.transformer.config.schedule.num_scales)
        # One call at a time (the calls share the kept KV cache), and the generator and the condition are made in
        # the call's turn: made before it, they could be on the device a `pipe.to` in another thread moved away from.
        with self.turn():
            generator = self.make_generator(seed, generator)
            mask_generator = None if seed is None or not masked_sampling else torch.Generator().manual_seed(int(seed))
            condition = self.make_condition(class_labels, prompt, int(num_images_per_prompt), guided, text_inputs)
            self.check_component_moves()
            if isinstance(constraint, ImageEdit):  # an edit's images, encoded here on the device the call runs on
                constraint = constraint.encoded(self.tokenizer, self.transformer.config.scale_sides, self.device)
            self.keep_memory()
            self.settle_linear_kernel()
            with self.precision.autocast(self.device), self.precision.linear_products():
                result = self.sampler.sample(
                    condition,
                    batch_size=int(num_images_per_prompt),
                    config=config,
                    generator=generator,
                    constraint=constraint,
                    mask_generator=mask_generator,
                )
            with self.precision.decoder_autocast(self.device):
                images = self.sampler.decode(result.f_hat)
        prompts = self.prompts_per_image(prompt, int(num_images_per_prompt))
        return PipelineOutput(
            images=to_output_type(images, output_type),
            tokens=result.tokens,
            class_labels=result.class_labels,
            prompts=prompts,
        )

    @property
    def num_sampling_steps(self) -> int:
        """The steps of a call, which ``ScaleOverride.scale_idx`` counts: one per scale."""
        return self.transformer.config.schedule.num_scales

    def check_overrides(self, overrides: ScaleOverride | Sequence[ScaleOverride]) -> tuple[ScaleOverride, ...]:
        """Per-scale overrides as a tuple; anything but a ``ScaleOverride`` of an existing step is refused (an
        override of a step that does not exist would be ignored without a word)."""
        overrides = (overrides,) if isinstance(overrides, ScaleOverride) else tuple(overrides)
        steps = self.num_sampling_steps
        for override in overrides:
            if not isinstance(override, ScaleOverride):
                raise TypeError(
                    f"overrides must be ScaleOverride objects (ScaleOverride(scale_idx=0, top_k=5)), got {override!r}"
                )
            index = override.scale_idx
            if not isinstance(index, numbers.Integral) or isinstance(index, bool):  # 1.5 would match no step
                raise TypeError(f"ScaleOverride.scale_idx must be an int step index, got {index!r}")
            if not 0 <= index < steps:
                raise ValueError(f"ScaleOverride.scale_idx must be in 0..{steps - 1}, got {override.scale_idx}")
        return overrides

    def make_condition(
        self,
        class_labels: Sequence[int | str | None] | torch.Tensor | int | str | None,
        prompt: str | list[str] | None,
        num_images_per_prompt: int,
        guided: bool,
        text_inputs: dict,
    ) -> Condition | None:
        """Class labels -> a ClassCondition (None: the sampler draws labels; a None label: the null class)."""
        if prompt is not None or any(value is not None for value in text_inputs.values()):
            raise ValueError("this pipeline is class-conditional; pass class_labels (prompts need a text pipeline)")
        if class_labels is None:
            return None
        if isinstance(class_labels, np.ndarray):
            class_labels = torch.from_numpy(class_labels) if class_labels.dtype.kind in "iu" else class_labels.tolist()
        if isinstance(class_labels, torch.Tensor) and (
            class_labels.is_floating_point() or class_labels.is_complex() or class_labels.dtype == torch.bool
        ):
            raise TypeError(
                f"class_labels must be integer ids, got a {class_labels.dtype} tensor; use e.g. torch.tensor([3, 7])"
            )
        if isinstance(class_labels, (set, frozenset, dict)):
            raise TypeError("class_labels must be ordered (a list, tuple or tensor): images come out in label order")
        if isinstance(class_labels, (numbers.Integral, str)):
            class_labels = [class_labels]
        if isinstance(class_labels, (bytes, bytearray)) or not isinstance(class_labels, (torch.Tensor, Iterable)):
            raise TypeError(  # a float such as 3.0 would otherwise fail as "'float' object is not iterable"
                f"class_labels must be an int id, a class name, or a list / tensor of them, got {class_labels!r} "
                f"({type(class_labels).__name__}); e.g. class_labels=[3] or class_labels=['Sneaker']"
            )
        null_id = self.transformer.config.null_class_id
        if isinstance(class_labels, torch.Tensor):
            outside = class_labels[(class_labels < 0) | (class_labels >= self.num_classes)]
            if outside.numel():
                raise self.class_out_of_range(int(outside[0]), CALL_UNCONDITIONAL)
        else:
            class_labels = list(class_labels)
            if not class_labels:
                raise ValueError("class_labels is empty; give at least one label, or None to draw labels")
            # names become ids; None asks for an unconditional row (the null class), as in edit_images
            class_labels = [
                null_id if label is None else self.class_ids([label], CALL_UNCONDITIONAL)[0] for label in class_labels
            ]
        return self.sampler.class_condition(class_labels).repeat_interleave(num_images_per_prompt)

    @staticmethod
    def prompts_per_image(prompt: str | list[str] | None, num_images_per_prompt: int) -> list[str] | None:
        if prompt is None:
            return None
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        return [str(text) for text in prompts for _ in range(num_images_per_prompt)]  # numpy's str_ as plain str

    @torch.no_grad()
    def decode_tokens(
        self, tokens: torch.Tensor | np.ndarray | Sequence[Sequence[int]], output_type: str = "pt"
    ) -> list[Image.Image] | torch.Tensor | np.ndarray:
        """Tokens -> images, e.g. to re-render saved ``out.tokens``.

        Args:
            tokens: (B, L) integer token ids (a tensor, array or nested list), scales concatenated coarse to fine,
                row-major inside a scale, as in ``PipelineOutput.tokens``.
            output_type: "pt" ((B, C, H, W) in [0, 1]), "np" ((B, H, W, C) uint8) or "pil".
        Returns:
            the images in the requested form.
        """
        tokens = self.checked_tokens(tokens, output_type)
        with self.turn():  # not while a `pipe.to` in another thread moves the tokenizer
            self.check_component_moves()
            indices = self.tokenizer.indices_from_tokens(tokens.to(self.device))
            images = self.tokenizer.decode(indices).add(1).div(2)
        return to_output_type(images, output_type)

    @torch.no_grad()
    def decode_scales(
        self, tokens: torch.Tensor | np.ndarray | Sequence[Sequence[int]], output_type: str = "pt"
    ) -> list[list[Image.Image] | torch.Tensor | np.ndarray]:
        """The coarse-to-fine view of tokens (``nextscale sample --show-scales``): what the first k scales decode
        to, for k = 1 .. K; the last equals :meth:`decode_tokens`. Costs K decoder passes over the batch.

        Args:
            tokens: (B, L) integer token ids, as for :meth:`decode_tokens` (e.g. ``out.tokens``).
            output_type: "pt", "np" or "pil", as for :meth:`decode_tokens`.
        Returns:
            a list of K batches (one per scale, coarse to fine), each in the requested form.
        """
        tokens = self.checked_tokens(tokens, output_type)
        with self.turn():  # not while a `pipe.to` in another thread moves the tokenizer
            self.check_component_moves()
            views = self.tokenizer.decode_scales(self.tokenizer.indices_from_tokens(tokens.to(self.device)))
        return [to_output_type(view.float().add(1).div(2), output_type) for view in views]

    def checked_tokens(
        self, tokens: torch.Tensor | np.ndarray | Sequence[Sequence[int]], output_type: str
    ) -> torch.Tensor:
        """The tokens of :meth:`decode_tokens` / :meth:`decode_scales` as a (B, L) tensor of this vocabulary's ids."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        tokens = torch.as_tensor(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be (B, L) (one row per image), got shape {tuple(tokens.shape)}")
        check_token_ids(tokens, self.tokenizer.config.vocab_size)
        return tokens


def check_token_ids(tokens: torch.Tensor, vocab_size: int) -> None:
    """Refuse (B, L) tokens that are not integer ids of the vocabulary, naming ``tokens`` (the tokenizer would name
    "indices of scale 0" instead)."""
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must be integer token ids, got {tokens.dtype}; e.g. out.tokens, or tokens.long()")
    if tokens.numel() and not (0 <= int(tokens.min()) and int(tokens.max()) < vocab_size):
        raise ValueError(
            f"tokens must be ids in [0, {vocab_size}) (this tokenizer's vocabulary), got values in "
            f"[{int(tokens.min())}, {int(tokens.max())}]: tokens of another model?"
        )
