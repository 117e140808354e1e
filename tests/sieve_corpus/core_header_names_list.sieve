require "fileinto";
if header :contains ["to", "cc"] "wile" { fileinto "Wile"; }
if header :is "x-absent" "" { fileinto "EmptyAbsent"; }
