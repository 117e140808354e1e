"""lda: a Maildir local delivery agent that delivers each message exactly once.

The public API, for a program that embeds lda rather than running the `lda`
command (which is built on the same names):

    config = lda.load_config(path)          # lda.toml; None: LDA_CONFIG,
                                            # /etc/lda/lda.toml, else per-user
    resolver = lda.make_resolver(config, os.environ)
    log = lda.Log.configured(config)
    results = lda.Delivery(config, resolver, log, sender="a@example.org").run(
        ["alice@example.org"], message_file)  # a binary file; one Result each

- Config, load_config: the configuration (lda.config).
- Delivery: one message to its recipients, exactly once (lda.deliver.delivery);
  make_resolver: the recipients' targets for the configuration's mode
  (lda.deliver.resolve); Log: the log lines a delivery writes (lda.log).
- Directory: the managed mailbox directory (lda.store.directory);
  DeliveredTo: one mailbox database's DeliveredTo table (lda.store.deliveredto).
- LdaError and its subclasses (lda.errors): every failure lda expects, each
  with its sysexits `exit_code` and its `smtp_reply`.

`lda deliver` in-process is lda.deliver.command.deliver(argv, stdin=...),
which returns the exit status; it is not named here, since `lda.deliver` is
the package that holds it.

Every `lda deliver` imports this package first, so it imports nothing: each
name is imported on first use (PEP 562 module __getattr__).
"""

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Config", "load_config",
    "Delivery", "make_resolver", "Log",
    "Directory", "DeliveredTo",
    "LdaError", "TemporaryFailure", "UsageError", "ConfigError", "BadMessage", "MailLoop",
    "BadSender", "UnknownRecipient", "BadAddress", "QuotaExceeded", "QuotaTooBig",
    "MailboxMoving", "UnknownName", "AlreadyExists", "NoPermission",
    "MessageTooBig", "CannotCreate", "MaildirMissing", "UnsafePath", "NotOwner",
    "ForwardFailed",
]

_HOME = {"Config": "lda.config", "load_config": "lda.config",
         "Delivery": "lda.deliver.delivery", "make_resolver": "lda.deliver.resolve",
         "Log": "lda.log", "Directory": "lda.store.directory",
         "DeliveredTo": "lda.store.deliveredto"}


def __getattr__(name):
    if name not in __all__:
        raise AttributeError(f"module 'lda' has no attribute {name!r}")
    module = __import__(_HOME.get(name, "lda.errors"), fromlist=[name])
    value = globals()[name] = getattr(module, name)
    return value


def __dir__():
    return sorted({*globals(), *__all__})
