require "fileinto";
# plain.eml is 337 octets with LF line ends and 347 with CRLF (RFC 5322's form)
if size :over 340 { fileinto "CountsCRLF"; }
if size :under 341 { fileinto "CountsLF"; }
