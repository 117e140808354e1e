require ["ihave", "fileinto"];
if ihave "vacation" { fileinto "HasVacation"; }
else { error "no vacation here"; }
