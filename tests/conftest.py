import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# The tests keep their control sockets, lab state and stack logs in a run
# directory of their own (set before anything imports iopkt, and inherited
# by every `python -m iopkt` they start), so a test run neither sees nor
# disturbs a user's labs, and leaves nothing in /run/iopkt.
if "IOPKT_RUN_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _run_dir = tempfile.mkdtemp(prefix="iopkt-test-run-")
    os.environ["IOPKT_RUN_DIR"] = _run_dir
    atexit.register(shutil.rmtree, _run_dir, True)
