/* A bracketed comment
   over two lines */
require "fileinto"; # and a hash comment
if header :is "subject" "I have a \"present\" for you" { fileinto "Quoted"; }
if header :contains "subject" "pre\sent" { fileinto "Escaped"; }
