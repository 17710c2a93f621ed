"""The inference switch to fused elementwise kernels (``nextscale.layers.fused``) for every block of a model."""

from __future__ import annotations

from typing import TypeVar

from nextscale.layers.fused import require_fused_regions

Model = TypeVar("Model", bound="FusedKernels")


class FusedKernels:
    """Mixin of the transformers whose blocks can run their norms, modulations, residuals and q/k normalisation
    as compiled fused kernels at inference (:meth:`use_fused_kernels`)."""

    def use_fused_kernels(self: Model, enabled: bool = True) -> Model:
        """Run the elementwise regions of every block as fused compiled kernels in eval mode (``enabled``), or as
        the exact eager ops (the default); returns the model. Not bit-identical to the exact ops in float32 (about
        1e-6 relative); training ignores the switch. A ValueError says so when they cannot compile here."""
        device = next(self.parameters()).device
        regions = require_fused_regions(device) if enabled else None  # compiled here once, to fail clearly
        for module in self.modules():
            if hasattr(type(module), "fused"):  # the blocks and attentions that have fused forms
                module.fused = regions
        return self

    @property
    def fused_kernels(self) -> bool:
        """Whether :meth:`use_fused_kernels` is on."""
        # Asking only the modules whose class declares it: a missing attribute costs nn.Module an exception, and the
        # CUDA graphs read this at every call (0.4 -> 0.2 ms on a d16 model).
        return any(module.fused is not None for module in self.modules() if hasattr(type(module), "fused"))
