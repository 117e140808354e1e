require ["vnd.dovecot.debug", "variables", "envelope", "fileinto"];
# Pigeonhole enables vnd.dovecot.debug by default: a script that logs what it
# sees while it files must run unchanged.
if envelope :matches "from" "*" { set "from" "${1}"; }
debug_log "from ${from}";
if header :contains "subject" "present" {
  debug_log "filing into Presents";
  fileinto "Presents";
}
