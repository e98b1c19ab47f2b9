"""What each filter responds to, estimated by gradient ascent (Lee et al. 2017, section 5.5).

Every filter of a layer gets its own input: seeded noise of ``input_samples`` (729 in the paper,
about one spectrum frame). The filter's mean activation is back-propagated to that input and the
gradient, normalised to unit RMS, is added to it; after ``steps`` rounds the input is a waveform
the filter answers strongly, and its magnitude spectrum says which frequencies the filter passes.
All filters of a layer form one batch (batch norm runs in eval mode, so rows never mix) and the
forward pass stops at the layer, so a layer costs ``steps`` forward/backward passes of short inputs.

Layers are a model's convolutions in definition order, numbered from 1 as in the paper: for
SampleCNN layer 1 is the strided first convolution (``frontend``) and layer ``k`` the convolution
of module ``blocks[k - 2]``. A filter's activation is the output of the batch norm that directly
follows its convolution (the response as the next layer sees it, the sign of the norm's scale
included), or of the convolution itself when none follows; the batch norm comes before the ReLU,
so a filter that starts silent on the noise still gets a gradient. The same rule serves every
architecture musictag loads.

A layer must see at least one whole kernel of real input. 729 samples give the 3^9 model's layer 6
(module ``blocks[4]``) exactly three frames; a deeper layer sees the estimate centred in the
shortest stretch of silence that gives it a kernel's span (2187 samples for layer 7, 59049 for
layer 10), and only the estimate is updated. Such layers cost in proportion to that length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError

#: The paper's estimate length: 729 = 3^6 samples (33 ms at 22050 Hz), "close to a typical frame".
DEFAULT_INPUT_SAMPLES = 729
DEFAULT_STEPS = 20
#: Size of each normalised-gradient step, in the waveform's units (full scale is 1).
DEFAULT_STEP_SIZE = 0.1
#: Standard deviation of the starting noise (about the RMS of music at full scale).
NOISE_STD = 0.1

#: Input samples per forward pass (about 1.5 GB of activations for SampleCNN); a layer's filters
#: are one batch unless their inputs need more (layers that see the estimate within silence).
BATCH_SAMPLES = 2**20

#: Called after each step of a batch with (layer number, steps done, steps in all).
StepCallback = Callable[[int, int, int], None]

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class Layer:
    """One convolution of a model, as the visualisation addresses it."""

    number: int  # 1-based, in definition order (the paper's layer index for SampleCNN)
    conv: str  # module path of the convolution, e.g. "blocks.3.0"
    probe: str  # module whose output is the activation: the following batch norm, or the conv
    n_filters: int


@dataclass
class LayerEstimate:
    """The gradient-ascent estimates of one layer's filters and their spectra."""

    layer: Layer
    estimates: np.ndarray  # (n_filters, input_samples) float32, filter order
    spectra: np.ndarray  # (n_filters, n_bins) magnitude of the Hann-windowed estimate
    peak_hz: np.ndarray  # (n_filters,) frequency of each spectrum's largest bin
    order: np.ndarray  # (n_filters,) filter indices by rising peak frequency (stable)
    context_samples: int  # input length the layer saw: input_samples, or more (silence around)


def conv_layers(model: nn.Module) -> list[Layer]:
    """The model's convolutions in definition order, each with the module read as its activation."""
    modules = list(model.named_modules())
    layers = []
    for index, (name, module) in enumerate(modules):
        if not isinstance(module, _CONVOLUTIONS):
            continue
        probe = name
        if index + 1 < len(modules):
            next_name, next_module = modules[index + 1]
            if isinstance(next_module, _NORMS) and next_module.num_features == module.out_channels:
                probe = next_name
        layers.append(Layer(len(layers) + 1, name, probe, module.out_channels))
    return layers


def parse_layers(spec: str, available: Sequence[Layer]) -> list[Layer]:
    """``"1-6"``, ``"1,3,8-10"`` or ``"all"`` -> those layers; an unknown number is a ValueError."""
    by_number = {layer.number: layer for layer in available}
    if spec.strip().lower() == "all":
        return list(available)
    numbers: list[int] = []
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise ModelError(f"bad layer list {spec!r}: use e.g. 1-6, 1,3,5 or all") from None
        numbers.extend(range(low, high + 1))
    missing = sorted(set(numbers) - set(by_number))
    if missing or not numbers:
        raise ModelError(f"the model has layers 1-{len(available)}; asked for "
                         f"{', '.join(map(str, missing)) or 'none'}")
    return [by_number[number] for number in sorted(set(numbers))]


class _Reached(Exception):
    """Raised by the probe hook so that the forward pass stops at the layer looked at."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output


def activations(model: nn.Module, layer: Layer, waveforms: torch.Tensor) -> torch.Tensor:
    """``(batch, n_filters, *positions)``: the layer's activations, computing nothing beyond it."""

    def stop(_module, _inputs, output):
        raise _Reached(output)

    handle = model.get_submodule(layer.probe).register_forward_hook(stop)
    try:
        model(waveforms)
    except _Reached as reached:
        return reached.output
    finally:
        handle.remove()
    raise ModelError(f"layer {layer.number} ({layer.probe}) is not used by the model's forward")


def _sees_a_kernel(model: nn.Module, layer: Layer, n_samples: int) -> bool:
    """Whether an input of ``n_samples`` reaches the layer with at least one kernel's span.

    Shorter inputs can still produce an output ('same' padding), but from the kernel's centre
    taps alone, which would show a fraction of the filter.
    """
    conv = model.get_submodule(layer.conv)
    seen: list[torch.Size] = []
    handle = conv.register_forward_pre_hook(lambda _module, inputs: seen.append(inputs[0].shape))
    try:
        with torch.no_grad():
            silence = torch.zeros(1, n_samples, device=next(model.parameters()).device)
            if activations(model, layer, silence).numel() == 0:
                return False
    except RuntimeError:  # too short for some convolution or pooling on the way
        return False
    finally:
        handle.remove()
    return all(size >= kernel for size, kernel in zip(seen[0][2:], conv.kernel_size, strict=True))


def default_layers(model: nn.Module, layers: Sequence[Layer], *,
                   input_samples: int = DEFAULT_INPUT_SAMPLES) -> list[Layer]:
    """The layers that see a whole kernel inside the estimate alone (the first one at least).

    These are the layers the paper's 729 samples were chosen for (1-6 of the 3^9 model), and they
    cost seconds; deeper ones need silence around the estimate and cost in proportion to it.
    """
    reached = [layer for layer in layers if _sees_a_kernel(model, layer, input_samples)]
    return reached or list(layers[:1])


def context_samples(model: nn.Module, layer: Layer, *, input_samples: int,
                    max_samples: int) -> int:
    """The shortest input (at least ``input_samples``) giving the layer a kernel's span."""
    if _sees_a_kernel(model, layer, input_samples):
        return input_samples
    if not _sees_a_kernel(model, layer, max_samples):
        raise ModelError(f"layer {layer.number} ({layer.conv}) sees no full kernel even in "
                         f"{max_samples} samples")
    low, high = input_samples, max_samples  # low fails, high works
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if _sees_a_kernel(model, layer, middle) else (middle, high)
    return high


def ascend(model: nn.Module, layer: Layer, start: torch.Tensor, *, filters: torch.Tensor,
           context: int, steps: int, step_size: float,
           on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """Row ``i`` of ``start`` after ``steps`` normalised-gradient steps up filter ``filters[i]``."""
    n_samples = start.shape[1]
    left = (context - n_samples) // 2
    device = next(model.parameters()).device
    rows, filters = torch.arange(len(filters), device=device), filters.to(device)
    estimate = start.to(device)
    for _ in range(steps):
        estimate.requires_grad_(True)
        waveforms = F.pad(estimate, (left, context - n_samples - left))
        response = activations(model, layer, waveforms)[rows, filters]
        response.reshape(len(filters), -1).mean(dim=1).sum().backward()
        gradient = estimate.grad
        rms = gradient.pow(2).mean(dim=1, keepdim=True).sqrt()
        estimate = (estimate + step_size * gradient / (rms + 1e-12)).detach()
        if on_step:
            on_step()
    return estimate.cpu()


def spectra(estimates: np.ndarray, *, sample_rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude spectra of Hann-windowed rows and the bin frequencies in Hz."""
    n_samples = estimates.shape[1]
    window = np.hanning(n_samples).astype(np.float32)
    magnitude = np.abs(np.fft.rfft(estimates * window, axis=1)).astype(np.float32)
    return magnitude, np.fft.rfftfreq(n_samples, d=1.0 / sample_rate_hz)


def estimate_layer(model: nn.Module, layer: Layer, *, sample_rate_hz: float, max_samples: int,
                   input_samples: int, steps: int, step_size: float, seed: int,
                   on_step: StepCallback | None = None) -> LayerEstimate:
    """One layer's estimates, its filters in batches of at most :data:`BATCH_SAMPLES` samples."""
    context = context_samples(model, layer, input_samples=input_samples,
                              max_samples=max(max_samples, input_samples))
    generator = torch.Generator().manual_seed(seed * 1000 + layer.number)
    start = torch.randn(layer.n_filters, input_samples, generator=generator) * NOISE_STD
    batches = torch.arange(layer.n_filters).split(max(1, BATCH_SAMPLES // context))
    done = iter(range(1, steps * len(batches) + 1))
    tick = (lambda: on_step(layer.number, next(done), steps * len(batches))) if on_step else None
    estimates = torch.cat([ascend(model, layer, start[filters], filters=filters, context=context,
                                  steps=steps, step_size=step_size, on_step=tick)
                           for filters in batches]).numpy()
    magnitude, frequencies = spectra(estimates, sample_rate_hz=sample_rate_hz)
    peak_hz = frequencies[magnitude.argmax(axis=1)]
    return LayerEstimate(layer, estimates, magnitude, peak_hz, np.argsort(peak_hz, kind="stable"),
                         context)


def estimate_filters(model: nn.Module, layers: Sequence[Layer], *, sample_rate_hz: float,
                     max_samples: int, input_samples: int = DEFAULT_INPUT_SAMPLES,
                     steps: int = DEFAULT_STEPS, step_size: float = DEFAULT_STEP_SIZE,
                     seed: int = 0, on_step: StepCallback | None = None) -> list[LayerEstimate]:
    """Estimates, spectra and peak-frequency order for each of ``layers``.

    The model is put in eval mode with its parameters frozen (only inputs get gradients).
    ``max_samples`` (the model's window) bounds the silence a deep layer may need. Each layer's
    noise comes from its own generator seeded with ``seed`` and the layer number, so a layer's
    picture does not depend on which other layers were asked for.
    """
    if input_samples < 2 or steps < 0 or step_size <= 0:
        raise ModelError("input_samples must be >= 2, steps >= 0 and step_size > 0")
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return [estimate_layer(model, layer, sample_rate_hz=sample_rate_hz, max_samples=max_samples,
                           input_samples=input_samples, steps=steps, step_size=step_size,
                           seed=seed, on_step=on_step)
            for layer in layers]


def npz_arrays(results: Sequence[LayerEstimate], *, sample_rate_hz: float, steps: int,
               step_size: float, seed: int) -> dict[str, np.ndarray]:
    """The arrays ``musictag filters`` saves (README, "See what the network hears", lists them)."""
    input_samples = results[0].estimates.shape[1]
    arrays: dict[str, np.ndarray] = {
        "layers": np.array([r.layer.number for r in results]),
        "layer_names": np.array([r.layer.conv for r in results]),
        "sample_rate_hz": np.array(float(sample_rate_hz)),
        "frequencies_hz": np.fft.rfftfreq(input_samples, d=1.0 / sample_rate_hz),
        "input_samples": np.array(input_samples),
        "steps": np.array(steps),
        "step_size": np.array(step_size),
        "seed": np.array(seed),
    }
    for result in results:
        prefix = f"layer{result.layer.number}_"
        arrays[prefix + "estimates"] = result.estimates
        arrays[prefix + "spectra"] = result.spectra
        arrays[prefix + "peak_hz"] = result.peak_hz
        arrays[prefix + "order"] = result.order
        arrays[prefix + "context_samples"] = np.array(result.context_samples)
    return arrays
