if header :sideways "subject" "x" { keep; }
