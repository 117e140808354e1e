require "fileinto";
if header :is "x-padded" "value with space" { fileinto "Trimmed"; }
if header :is "x-empty" "" { fileinto "EmptyValue"; }
if header :matches "x-empty" "*" { fileinto "EmptyStar"; }
