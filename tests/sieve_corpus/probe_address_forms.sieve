require "fileinto";
if address :is :localpart "to" "first" { fileinto "First"; }
if address :is :domain "to" "EXAMPLE.NET" { fileinto "DomainCase"; }
if address :is :all "cc" "odd local@example.org" { fileinto "Quoted"; }
if address :contains :all "reply-to" "example.org" { fileinto "Commented"; }
