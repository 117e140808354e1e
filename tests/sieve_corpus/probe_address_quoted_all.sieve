require "fileinto";
# RFC 5322 3.2.4: the space inside a quoted-string is part of the local part
if address :is :all "to" "\"road runner\"@acme.example.com" { fileinto "Spaced"; }
if address :is :all "to" "\"roadrunner\"@acme.example.com" { fileinto "Squeezed"; }
