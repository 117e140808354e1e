require ["comparator-i;ascii-numeric", "fileinto"];
if header :is :comparator "i;ascii-numeric" "x-count" "42" { fileinto "FortyTwo"; }
if header :is :comparator "i;ascii-numeric" "x-ratio" "xyz" { fileinto "BothInfinite"; }
