require ["fileinto", "fileinto"];
require "envelope";
fileinto "Twice";
