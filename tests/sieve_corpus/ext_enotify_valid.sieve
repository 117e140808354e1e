require ["enotify", "fileinto"];
if valid_notify_method "mailto:a@example.org" { fileinto "Valid"; }
if valid_notify_method "xmpp:a@example.org" { fileinto "Xmpp"; }
if notify_method_capability "mailto:a@example.org" "online" "maybe" { fileinto "Maybe"; }
