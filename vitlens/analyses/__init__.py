"""The paper's measurements: each validates its input, streams images through
:mod:`vitlens.streaming` and reduces what it captures with a pure function."""
