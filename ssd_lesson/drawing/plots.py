"""All the figures in one namespace, as the notebooks call them: ``plots.grid_figure(...)``.

The code lives in five modules, each a page or two:

* :mod:`ssd_lesson.drawing.draw`: primitives (the image on the unit square, a box, a grid, labels);
* :mod:`ssd_lesson.drawing.figures`: the article's figures (ground truth, Figs. 1-6, the aside, Table 1);
* :mod:`ssd_lesson.drawing.anchor_figures`: notebook 2's (one grid cell picked out, a grid's anchor boxes);
* :mod:`ssd_lesson.drawing.loss_figures`: the figures beyond it (loss, gradients, detections);
* :mod:`ssd_lesson.drawing.match_figures`: positives a row per object: the two matchings (notebook 11),
  training's stages (notebook 9).

Boxes are ``(y0, x0, y1, x1)`` fractions of the image unless a docstring says pixels.
"""
from .draw import *  # noqa: F401,F403
from .draw import __all__ as _draw_all
from .figures import *  # noqa: F401,F403
from .figures import __all__ as _figures_all
from .anchor_figures import *  # noqa: F401,F403
from .anchor_figures import __all__ as _anchor_figures_all
from .loss_figures import *  # noqa: F401,F403
from .loss_figures import __all__ as _loss_figures_all
from .match_figures import *  # noqa: F401,F403
from .match_figures import __all__ as _match_figures_all

__all__ = [*_draw_all, *_figures_all, *_anchor_figures_all, *_loss_figures_all, *_match_figures_all]
