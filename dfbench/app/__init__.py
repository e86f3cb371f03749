"""The application: what a user runs.

Config resolution and hashing (``config``), one run from request to record and suites of them
(``runner``, ``suites``), run records (``records``, ``results``, ``queries``, ``summary``,
``pictures``), leaderboards (``leaderboard``), the command line (``cli``, ``interrupts``), the
plugin checks (``conformance``) and the plugin scaffold (``scaffold``).
"""
