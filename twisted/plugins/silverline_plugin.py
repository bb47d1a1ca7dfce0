# A lazy pointer: twistd imports every dropin to build --help, so this file
# must stay tiny; orchestrator.tap is imported only when `silverline` runs.
from twisted.application.service import ServiceMaker

silverline = ServiceMaker(
    "SilverLine Orchestrator",
    "orchestrator.tap",
    "Places WebAssembly modules on edge runtimes over MQTT; read-only REST API.",
    "silverline",
)
