"""booktools: build, export, execute and benchmark the book (not part of the ``bnbook`` package).

* ``booktools.layout``: the chapters as ``_toc.yml`` lists them, and their export to notebooks.
* ``booktools.execute``: execute chapters two at a time, and hand the results to the build's cache.
* ``booktools.bench``: ``make bench``, every chapter cold with its time and memory.
* ``booktools.failures``: a failing chapter's report, its ``.md`` and the cell's line first.
* ``booktools.nbmake_names``: the same first line under nbmake (``make test``), a pytest plugin.
* ``booktools.processes``: the worker and kernel processes, stopped on SIGINT or SIGTERM.

Run as ``python -m booktools COMMAND`` with ``code/`` on ``PYTHONPATH`` (the
Makefile does); ``python -m booktools`` lists the commands.
"""
