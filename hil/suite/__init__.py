"""`bedside hil run`: scenario suites against a gateway, with faults, expectations and a report.

`spec` reads a suite (TOML), `runner` plays each scenario's timeline against a target
(`target`: `bedside run` on this machine) with bench devices (`devices`) and a real
Mosquitto broker, recording what happened; `check` decides every expectation over the
recorded events (pure); `report` writes the JSON summary, JUnit XML and one HTML file.
"""
