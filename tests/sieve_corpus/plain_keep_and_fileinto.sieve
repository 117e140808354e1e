require "fileinto";
keep;
fileinto "A";
fileinto "B";
