require ["ihave", "fileinto"];
if ihave "fileinto" { fileinto "HaveFileinto"; }
if ihave "x-nonexistent" { x_unknown_command; }
