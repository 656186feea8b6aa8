"""The report layer: the HTML report of a run folder (``deepfield.report.html``).

It sits above the tasks: it reads what a run wrote (metrics, history, figures drawn by
:mod:`deepfield.plots`) and writes only ``report.html``. The submodules are imported on
demand, so reading a report does not load matplotlib.
"""
