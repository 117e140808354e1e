require ["fileinto", "subaddress"];
# The parts of a quoted local part are its content, without the quoting
if address :is :localpart "to" "road runner" { fileinto "Local"; }
if address :is :localpart "cc" "a@b" { fileinto "At"; }
if address :is :user "cc" "wile" { fileinto "User"; }
if address :is :detail "cc" "traps e" { fileinto "Detail"; }
# :all writes the local part quoted only where it must be
if address :is :all "cc" "plain@acme.example.com" { fileinto "Unquoted"; }
if address :is :all "cc" "\"a@b\"@acme.example.com" { fileinto "StillQuoted"; }
