"""End-to-end experiments on real recordings (`acula experiment`), each writing results.json, a table and a figure.

`alignment` runs AcuLa on any configuration of report-bearing corpora and judges it on held-out subjects.
"""
