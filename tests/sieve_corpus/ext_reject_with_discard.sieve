require "reject";
discard;
reject "No.";
