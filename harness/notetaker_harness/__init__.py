"""A notetaker stack against discordsim.

* :mod:`notetaker_harness.stackcheck`: the fixed scenario suite run on whatever backend
  and Discord library are installed (``notetaker doctor``, ``matrix/cell.py``, tests).
* :mod:`notetaker_harness.engine_rig`: core's receive engine logged in to the simulator
  through a bare main-gateway client (core's engine tests).

It lives in its own distribution because it is the only code that imports both
notetaker and discordsim: the simulator is Discord in a box and knows nothing of
notetaker, and core reaches this package only as an optional dependency.
"""
