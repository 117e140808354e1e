require "fileinto";
if address :domain :is "from" "desert.example.org" { fileinto "Desert"; }
if address :localpart :is ["to", "cc"] "roadrunner" { fileinto "Mine"; }
if address :all :matches "from" "*@*.example.org" { fileinto "Org"; }
