require "fileinto";
if true { fileinto "Yes"; }
if false { fileinto "No"; }
