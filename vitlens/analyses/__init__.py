"""The paper's measurements: each validates its input, streams images through
:mod:`vitlens.capture` and reduces what it captures with a pure function."""
