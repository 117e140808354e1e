require "reject";
reject "No.";
reject "Still no.";
