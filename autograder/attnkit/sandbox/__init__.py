"""The sandbox: everything that runs next to student code, and the grader's handle on it.

- ``protocol``: the data-only wire format and its message kinds;
- ``confine``, ``seccomp``: least privilege for the child (namespaces, a new
  root, no privilege, limits, a syscall filter);
- ``zygote``: the warm worker that forks one child per submission;
- ``child``, ``standins``: what runs in the child: the request server and the
  stand-ins for the stages an item may call;
- ``contract``: the terms of the grader's side: ``Limits``, the errors, which runner;
- ``forking``: the fork runner (Linux): the warm worker ``ForkZygote`` and its children;
- ``client``: ``Session``, one submission graded in a child;
- ``answers``: the grader's bounded memo of stand-in answers already given;
- ``runners``: ``Zygote``, the warm worker for this machine (fork or portable);
- ``portable``, ``spawned``: the portable runner (macOS, Windows, or
  ``ATTNKIT_SANDBOX=portable``): one spawned process per submission behind the
  same ``Zygote`` interface, with reduced isolation.

Nothing in this package imports the grader (``attnkit.*`` outside
``attnkit.sandbox``); ``tests/test_sandbox_boundary.py`` keeps it so.
"""

__all__ = ["ChildFault", "LimitHit", "Limits", "SandboxError", "Session", "Zygote"]


def __getattr__(name: str):
    # Lazily: the worker imports this package before it enters its user namespace,
    # which the kernel allows only while the process has a single thread, and the
    # client's numpy would start a thread pool.
    if name == "Zygote":
        from attnkit.sandbox.runners import Zygote

        return Zygote
    if name == "Session":
        from attnkit.sandbox.client import Session

        return Session
    if name in __all__:
        from attnkit.sandbox import contract

        return getattr(contract, name)
    raise AttributeError(name)
