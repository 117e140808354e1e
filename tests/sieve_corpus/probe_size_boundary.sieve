require "fileinto";
if size :over 400 { fileinto "Over400"; }
if size :under 400 { fileinto "Under400"; }
