require ["variables", "fileinto"];
if string :matches "a.b.c" "*.*" { fileinto "First.${1}-${2}"; }
if string :matches "xaaay" "x*a*y" { fileinto "Second.${1}-${2}"; }
