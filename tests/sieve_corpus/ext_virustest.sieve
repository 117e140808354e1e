require ["virustest", "relational", "comparator-i;ascii-numeric", "fileinto"];
if virustest :value "eq" :comparator "i;ascii-numeric" "1" { fileinto "Clean"; }
