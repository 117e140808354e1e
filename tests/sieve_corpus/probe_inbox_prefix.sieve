require "fileinto";
fileinto "INBOX.Receipts";
