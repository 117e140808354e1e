require ["regex", "fileinto"];
if header :regex "subject" "^\\[[^]]+\\] PEP [0-9]+" { fileinto "PEPs"; }
if header :regex :comparator "i;octet" "subject" "^make money" { fileinto "CaseSensitive"; }
if header :regex "subject" "^make money" { fileinto "CaseInsensitive"; }
