if header :is "bad name:" "x" { keep; }
