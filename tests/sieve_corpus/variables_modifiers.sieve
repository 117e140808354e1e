require ["variables", "fileinto"];
set "a" "Mixed Case";
set :lower "b" "${a}";
set :upper "c" "${a}";
set :length "n" "${a}";
set :quotewildcard "q" "a*b?c";
if string :is "${b}-${c}-${n}" "mixed case-MIXED CASE-10" { fileinto "Modifiers"; }
if string :is "${q}" "a\\*b\\?c" { fileinto "Quoted"; }
