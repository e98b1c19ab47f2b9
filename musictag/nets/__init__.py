"""Every architecture musictag runs, trains or exports, built from a card's ``arch`` dict.

Importing this package registers all of them; tag, train, evaluate and export go through
:func:`build_model` only.
"""

from torch import nn

from . import framelevel_mel, musicnn_tf, samplecnn, won2020  # noqa: F401  (registers them)
from .registry import architecture_names, build_model, config_from_dict, config_to_dict

__all__ = ["architecture_names", "build_model", "config_from_dict", "config_to_dict",
           "use_bf16_form"]


def use_bf16_form(model: nn.Module) -> nn.Module:
    """Switch ``model`` to the layout its bf16 kernels run fastest in, where it has one.

    Only the computation changes (see :meth:`samplecnn.SampleCNN.use_channels_last_2d`), not the
    parameters or their names, so checkpoints and cards are the same in either form.
    """
    if isinstance(model, samplecnn.SampleCNN):
        model.use_channels_last_2d()
    return model
