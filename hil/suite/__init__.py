"""`bedside hil run`: scenario suites against a gateway, with faults, expectations and a report.

`spec` reads a suite (TOML), `runner` plays each scenario's timeline against a target
(`target`: `bedside run` on this machine; `vm_target`: the image under QEMU;
`ssh_target`: a box on the bench) with bench devices (`devices`) and a real Mosquitto
broker, and plays the box's own faults (`faults`), recording what happened; `check` decides every expectation over the
recorded events (pure); `report` writes the JSON summary, JUnit XML and one HTML file.
"""
