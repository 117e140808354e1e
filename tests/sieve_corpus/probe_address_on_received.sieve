if address :is "received" "x@example.org" { discard; }
