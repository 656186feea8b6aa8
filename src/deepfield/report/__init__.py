"""The report layer: figures (``deepfield.report.figures``) and the HTML run report (``deepfield.report.html``).

It sits above ``analysis``: it draws and writes what the lower layers measured. The
submodules are imported on demand, so reading a report does not load matplotlib.
"""
