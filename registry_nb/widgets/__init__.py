"""ipywidgets front ends: push, pull and build forms and a registry browser.

``PushForm(reg)``, ``PullForm(reg)``, ``BuildForm(reg)``: inputs, run and cancel
buttons, an overall progress bar (bytes and speed), one bar per layer, a bounded
log, a status line and a result panel with the image's layer chart.
``form.run_button.click()`` starts a run on the form's worker thread;
``form.wait(timeout)`` returns the result dict or raises what the operation
raised; ``form.result``, ``form.error`` and ``form.progress`` can be read at any
time. ``SyncForm(reg, source=...)`` mirrors repositories from another registry into
``reg`` (Preview: a dry run; Start; one bar; a table row per tag).
``RegistryBrowser(reg)``: repositories (with a filter) -> tags -> one tag's
layer chart, config summary and attachments; two tags compared (``compare``).

Importing this module imports ipywidgets; ``import registry_nb`` does not.
"""

from __future__ import annotations

from ._common import FormInputError, human_bytes
from .browser import RegistryBrowser, config_summary
from .charts import figure_png, instruction, layer_chart
from .compare import ImageDiffView
from .forms import BuildForm, PullForm, PushForm, parse_build_args
from .operation import OperationForm
from .sync import SyncForm

__all__ = [
    "PushForm",
    "PullForm",
    "BuildForm",
    "SyncForm",
    "RegistryBrowser",
    "ImageDiffView",
    "OperationForm",
    "FormInputError",
    "parse_build_args",
    "config_summary",
    "layer_chart",
    "figure_png",
    "instruction",
    "human_bytes",
]
